"""Global near-duplicate removal as distributed stages, each a command an Indexed Job runs.

The shards write each part's MinHash signatures at ingest. Then:

1. `buckets` (tasks share the bands): each task cuts every signature into its bands, hashes
   each band to 64 bits, spills sorted runs of (band hash, document) to object storage when its
   buffer is full, merges the runs, and writes the duplicate pairs it finds among the documents
   that share a band (verified by estimated similarity, as the single-pod pass did).
2. `clusters` (one task): union-find over all pairs, its parent array a file on local disk;
   keeps the first document of each cluster and writes, per part, the rows it removes.
3. `filter` (tasks share the parts): rewrites the parts that lost documents.

Publish then lists the filtered parts. Every task commits a marker with its progress when its
output is written, so a rerun skips it; `progress` sums them per stage.
"""
