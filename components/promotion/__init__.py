"""Promotion: the gate's pure decision, and re-scoring the champion so it is compared like with like."""
