"""`serve`: a local web page over one mirror (gallery, search, image pages, status, curation)."""
