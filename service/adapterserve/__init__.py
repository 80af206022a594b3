"""adapterserve: many task adapters on one frozen BERT-family backbone."""

__version__ = "0.1.0"
