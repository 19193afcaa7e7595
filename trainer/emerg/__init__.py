"""EmerG (KDD 2024; spec emerg.md): model in `model.py`, its three training stages in
`training.py`; the protocol method is `trainer.methods.emerg.EmerG`."""
