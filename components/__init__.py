"""ganops components: one subpackage per pipeline stage, on top of `core` and `config` (see docs/architecture.md)."""
