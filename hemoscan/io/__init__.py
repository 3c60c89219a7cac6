"""Reading image tiles and resolving scan sources (files, folders, globs, list files)."""
