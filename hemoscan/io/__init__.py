"""Reading image tiles and whole-slide images, and resolving scan sources (files, folders, globs,
list files)."""
