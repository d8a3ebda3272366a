"""Tables, plots and HTML reports built from run records."""
