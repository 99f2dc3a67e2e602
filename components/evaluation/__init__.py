"""Evaluation: Frechet distance and streaming statistics (bottom), KID/precision/recall/bootstrap, the feature
extractors (domain classifier, Inception), sources for `ganops fid`, and one combiner (`evaluate`)."""
