"""Sharing: the model card, pushing to the Hub, and the shipped model."""
