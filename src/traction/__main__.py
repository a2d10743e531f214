from traction.cli import app

app()
