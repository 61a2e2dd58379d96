"""How the benchmark scores an embedding: PML's AccuracyCalculator with
Recall@K, and faiss placed on the embeddings' device."""
