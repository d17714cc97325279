from inferstack.cli import app

app()
