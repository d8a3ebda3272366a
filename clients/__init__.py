"""The fedkd Flower ClientApp."""
