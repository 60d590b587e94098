"""Orchestration: experiments as factorials of packs, one pack end to end (runner), Ray Tune trials and sweeps, CLIs."""
