"""Reference implementations of the same network in other frameworks, used only by
`python -m slr.bench peer=...` to compare speed on identical shapes."""
