"""Reference data shipped with cbm (States, regions, regime participation, rule parameters)."""
