"""The protocol between the ServerApp and ClientApps; one front door to its three parts.

- :mod:`fedkd.protocol.messages`   the messages' schemas: build and parse train messages and replies.
- :mod:`fedkd.protocol.validation` every reply's checks (``validate_reply``, ``InvalidReply`` and its reasons).
- :mod:`fedkd.protocol.identify`   the identify handshake (which client a node is).

What travels of the run config (the client keys that differ from the defaults, and a digest) is the
config layer's job (``fedkd.config.compact_run_config``); a node's state on disk is the node checkpoint's
(``clients/node_checkpoint.py``).
"""
from fedkd.protocol.identify import (IDENTIFY_TYPE, IdentifyAnswer, build_identify_message, build_identify_reply,
                                     parse_identify_message, parse_identify_reply)
from fedkd.protocol.messages import (LABEL_HISTOGRAM_KEY, MESSAGE_TYPE, TrainInstruction, build_reply_content,
                                     build_train_content, build_train_message, knowledge_record, message_bytes,
                                     parse_train_message, read_soft_labels, record_arrays, train_config)
from fedkd.protocol.validation import (METRIC_RULES, REASONS, SIZE_SLACK_BYTES, InvalidReply, KnowledgeReply,
                                       ReplyRules, check_probabilities, validate_reply)

__all__ = ["IDENTIFY_TYPE", "IdentifyAnswer", "InvalidReply", "KnowledgeReply", "LABEL_HISTOGRAM_KEY",
           "MESSAGE_TYPE", "METRIC_RULES", "REASONS", "ReplyRules", "SIZE_SLACK_BYTES", "TrainInstruction",
           "build_identify_message", "build_identify_reply", "build_reply_content", "build_train_content",
           "build_train_message", "check_probabilities", "knowledge_record", "message_bytes", "parse_identify_message",
           "parse_identify_reply", "parse_train_message", "read_soft_labels", "record_arrays", "train_config",
           "validate_reply"]
