"""Research built on antray, apart from the product: one folder per campaign, each with its
README (what it was, how to rerun it), its drivers and analyses, and its notebook. Nothing in
orchestrator/, trainers/, generators/, evaluation/ or tune_spaces/ imports from here.

Scripts run as modules from the repository root: ``python -m experiments.<campaign>.<name>``.
"""
