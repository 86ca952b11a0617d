"""Retrieval, clustering and normal-vs-abnormal metrics (DESIGN §9). numpy only: never imports torch."""
from .clustering import ClusterScores, cluster_scores, powerset_classes, purity
from .evaluate import evaluate_embeddings
from .labelsets import jaccard_matrix, label_sets, map_at_r_expected, relevance_matrix, roc_auc
from .metrics import (
    finding_precision_at_k,
    finding_precision_chance,
    map_at_r,
    map_at_r_chance,
    ndcg_at_k,
    ndcg_at_k_chance,
    normal_auc,
    precision_at_k,
    precision_at_k_chance,
)
from .neighbours import l2_normalise, nearest_neighbours, random_embeddings, score_chunks
from .records import MetricRecord, records_to_table
from .retrieval import RetrievalScores, RetrievalSpec, retrieval_scores

__all__ = [
    "ClusterScores", "cluster_scores", "powerset_classes", "purity", "evaluate_embeddings", "RetrievalScores",
    "RetrievalSpec", "finding_precision_at_k", "finding_precision_chance", "jaccard_matrix", "label_sets",
    "map_at_r", "map_at_r_chance", "map_at_r_expected", "ndcg_at_k", "ndcg_at_k_chance", "normal_auc",
    "precision_at_k", "precision_at_k_chance", "relevance_matrix", "retrieval_scores", "roc_auc", "l2_normalise",
    "nearest_neighbours", "random_embeddings", "score_chunks", "MetricRecord", "records_to_table",
]
