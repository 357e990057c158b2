"""The notebook face: `%%foundry` / `%foundry` magics, their argument parsing, cell prompting
and conversations, rendering, progress displays and the connection picker widget."""
