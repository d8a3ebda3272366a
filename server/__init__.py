"""The fedkd Flower ServerApp."""
