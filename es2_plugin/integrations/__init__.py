"""Adapters that bring ES2 into host training frameworks (imported only by those frameworks)."""
