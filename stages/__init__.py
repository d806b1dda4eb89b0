"""stages: ViLaSR's three training stages (cold start, reflective rejection sampling, RL) on one
shared trainer. Imports vilasr, synth and tpu."""
