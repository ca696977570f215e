"""Access control: SIDs, ACEs and security descriptors, and their translation between systems."""
