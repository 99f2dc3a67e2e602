"""Data: dataset sources (digits, folders, .npz, S3), the deterministic PNG writer, image listing and loading, DVC."""
