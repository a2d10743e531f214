"""Engagement, pure: what a journey is, when a person enters, what each step does next,
quiet hours, caps, holdouts and templates. No I/O: `engage.service` runs it on the stores."""
