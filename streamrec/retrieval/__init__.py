"""Retrieval at catalogue scale: approximate nearest neighbours over item embeddings (``ann``), and a
synthetic catalogue of realistic neighbourhoods to prove it on (``synthetic``)."""
