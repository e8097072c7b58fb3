"""How one run trains: the loop, the seed-group engine, recipes, stages, models and the device."""
