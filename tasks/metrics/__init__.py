"""Field metrics that Keras lacks, each tested against a direct reference computation."""
