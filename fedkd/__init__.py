"""fedkd: federated knowledge distillation on Flower.

Clients share soft labels on a public transfer set, never weights or data; the
server fuses them per client (KnFu, FedMD, DS-FL) and sends each its targets.
"""
__version__ = "0.1.0"
