"""Helpers for the database-integration workbook. Import the module you need; nothing heavy loads here."""
