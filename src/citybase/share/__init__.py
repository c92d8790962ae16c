"""Sharing under control: catalog, access requests and grants, masking, privacy-preserving
aggregates and usage metering."""
