"""Stand-ins for outside tools that cannot run on the test machines (the smolvm CLI)."""
