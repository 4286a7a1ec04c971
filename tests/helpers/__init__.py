"""What several test modules share: tool runs in fresh interpreters (:mod:`.tools`), building a
config's model and training it a step (:mod:`.models`), float64 references written from
definitions (:mod:`.reference`), runs killed and resumed (:mod:`.kill_resume`), and modules that
test configs import in subprocesses (:mod:`.rank_weights`, ``stubs/``)."""
