"""Dataset adapters: the catalog, image folders and IDX directories."""
