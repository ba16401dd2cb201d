"""Many greenroom nodes on PostgreSQL and Valkey/Redis (docs/cluster.md)."""
