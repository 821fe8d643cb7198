"""Reads records (the store) only: the HTML report, its charts and tables -- torch-free."""
