import sys, os, csv, tomllib, numpy as np, onnxruntime as ort
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),".."))
from reference_embed import load_rgb, preprocess
G=os.path.join(os.path.dirname(os.path.abspath(__file__)),"../../../shared/data/grocery")
rows=[]
SETS=["catalog"] if sys.argv[1:]==["catalog"] else ["photos-train","photos-val"]
for k in SETS: rows+=list(csv.DictReader(open(f"{G}/{k}.csv")))
out={}
sess={}
for tag,mdir in [("l0",os.path.join(os.path.dirname(os.path.abspath(__file__)),"../../models/")+"efficientnet-lite0"),("sscd",os.path.join(os.path.dirname(os.path.abspath(__file__)),"../../models/")+"sscd-distilled")]:
    m=tomllib.load(open(mdir+"/model.toml","rb")); so=ort.SessionOptions(); so.intra_op_num_threads=2
    sess[tag]=(m,ort.InferenceSession(os.path.join(mdir,m["file"]),so,providers=["CPUExecutionProvider"]))
fr=[0.6,0.7,0.8] if SETS==["catalog"] else [0.5,0.6,0.7,0.8,0.9]
buf={(t,f):[] for t in sess for f in fr}
for i in range(0,len(rows),16):
    ims=[load_rgb(os.path.join(G,r["image"])) for r in rows[i:i+16]]
    for f in fr:
        cr=[im.crop((int(im.size[0]*(1-f)/2),int(im.size[1]*(1-f)/2),int(im.size[0]*(1+f)/2),int(im.size[1]*(1+f)/2))) for im in ims]
        for t,(m,s) in sess.items():
            x=np.stack([preprocess(c,m["input"]) for c in cr])
            buf[(t,f)].append(s.run([m["output"]["name"]],{m["input"]["name"]:x})[0].reshape(len(x),-1))
np.savez(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+("/crops_cat.npz" if SETS==["catalog"] else "/crops.npz"),**{f"{t}_{f}":np.concatenate(v) for (t,f),v in buf.items()})
