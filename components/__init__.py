"""ganops components: one module per pipeline stage, plain functions that flows orchestrate."""
