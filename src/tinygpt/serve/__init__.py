"""`tinygpt serve`: any run, base or chat, behind OpenAI's API, with a playground page.

    engine.py   continuous batching: requests join one running Decoder per model and leave it when done
    schemas.py  the request bodies (pydantic), with OpenAI's names and ranges
    app.py      the FastAPI routes: /v1/models, /v1/completions, /v1/chat/completions, /health, /
    responses.py  OpenAI's response shapes: whole answers, streamed chunks, usage, logprobs
    server.py   the runs to serve, and uvicorn in the foreground or in a thread
    static/     index.html, the playground (inline script and style: it works offline)

Needs the serve extra: pip install 'tinygpt[serve]'.
"""
