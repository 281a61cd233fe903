"""The application layer: what the commands do (tell, render, continue, describe, edit, export, batch,
doctor), over the planner, the generator, the story folder and the audio delivery."""
