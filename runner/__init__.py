"""Running many dialogues: the run folder, the export format, statistics and the batch driver."""
