"""SDK calls that follow a URL the provider handed out, through the gateway, with the
official Python SDKs (google-genai, anthropic). Run by tests/url-rewrite-python.test.ts.

Environment: SKYBRIDGE_URL (the gateway), API_KEY (what the client presents: a dummy
key or a virtual key). Each command prints one JSON line on stdout.

  gemini_upload PATH MIME     files.upload; prints the File and every request the SDK
                              sent (method, path, query, whether it carried a credential)
  gemini_download NAME DEST   files.download of NAME into DEST
  anthropic_batches FLAVOUR   plain | beta: batches.create, then batches.results()
"""
import json
import os
import sys
from urllib.parse import urlsplit

GATEWAY = os.environ.get("SKYBRIDGE_URL", "http://localhost:8080")
API_KEY = os.environ.get("API_KEY", "dummy-key")
CREDENTIALS = ("x-goog-api-key", "authorization", "x-api-key")


def gemini_client(sent):
    from google import genai
    from google.genai.types import HttpOptions

    def record(request):
        url = urlsplit(str(request.url))
        sent.append({
            "method": request.method,
            "path": url.path,
            "query": url.query,
            "credential": any(h in request.headers for h in CREDENTIALS),
        })

    return genai.Client(
        api_key=API_KEY,
        http_options=HttpOptions(
            base_url=f"{GATEWAY}/genai_passthrough",
            client_args={"event_hooks": {"request": [record]}},
        ),
    )


def gemini_upload(path, mime):
    sent = []
    client = gemini_client(sent)
    file = client.files.upload(file=path, config={"mime_type": mime})
    return {
        "name": file.name,
        "uri": file.uri,
        "download_uri": file.download_uri,
        "size_bytes": file.size_bytes,
        "sent": sent,
    }


def gemini_download(name, dest):
    sent = []
    client = gemini_client(sent)
    data = client.files.download(file=name)
    with open(dest, "wb") as f:
        f.write(data)
    return {"size": len(data), "sent": sent}


def anthropic_batches(flavour):
    import anthropic

    client = anthropic.Anthropic(base_url=f"{GATEWAY}/anthropic_passthrough", api_key=API_KEY)
    api = client.beta.messages.batches if flavour == "beta" else client.messages.batches
    requests = [
        {
            "custom_id": cid,
            "params": {
                "model": "claude-sonnet-4-20250514",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": text}],
            },
        }
        for cid, text in (("a", "hi"), ("b", "ho"))
    ]
    batch = api.create(requests=requests)
    results = [r.model_dump(mode="json", exclude_unset=True) for r in api.results(batch.id)]
    return {"id": batch.id, "results_url": batch.results_url, "results": results}


COMMANDS = {"gemini_upload": gemini_upload, "gemini_download": gemini_download, "anthropic_batches": anthropic_batches}

if __name__ == "__main__":
    print(json.dumps(COMMANDS[sys.argv[1]](*sys.argv[2:])), flush=True)
