"""The M5Product submission formats, one module each, and the references they share.

- `ranked`: `m5product_ranked`, SCALE's `*_feature_retrieval_id_list.txt`;
- `embeddings`: `m5product_embeddings`, SCALE's query / gallery feature folders
  (`id.npy` + per-modality `*_feature_np.npy`), ranked by the metric;
- `labels`: `m5product_labels` (classification, `{id: label}` JSON) and
  `m5product_clusters` (clustering, `{id: cluster}` JSON);
- `references`: labels of the scored split (and its gallery) from the prepared dataset
  or from the official release folder.
"""
