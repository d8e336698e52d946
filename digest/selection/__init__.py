"""Which papers a reader gets: the paper index and ranking (index) and the text models (semantic). Pure."""
