"""Building blocks shared by the model families, each written once."""
