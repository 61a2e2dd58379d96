"""How the benchmark scores an embedding: PML's AccuracyCalculator with Recall@K
(accuracy.py) and its cut-offs (recall_ks.py), faiss placed on the embeddings'
device (faiss_device.py), LFW's verification protocol (verification.py), and the
learned class tree against a data set's superclasses (hierarchy.py)."""
