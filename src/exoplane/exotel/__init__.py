"""Everything that speaks Exotel's upstream formats."""
