"""Many nodes on PostgreSQL and Valkey/Redis (docs/cluster.md)."""
