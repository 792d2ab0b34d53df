"""Result -> figure functions, apart from computing. Static figures use matplotlib (Agg)."""
