"""What a run trains on: construction (teachers, student init, data, minibatch order), image sets, stored
teachers in the authors' format, pretraining."""
