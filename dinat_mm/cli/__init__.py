"""The tools' side: turning a command line into a config for mmengine's Runner (:mod:`.config`),
checking what a run will read before it starts (:mod:`.checks`) and finding where to resume
(:mod:`.resume`). Imported by ``tools/`` only; ``import dinat_mm`` does not load it."""
