"""Reports: leaderboards and (later) paper tables, plots, sheets."""
