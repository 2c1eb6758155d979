"""tripletlab: learn image similarity with triplet losses."""
