"""The article's pictures and the dataset map."""
